// SluiceStore: placeholder until the module lands.
