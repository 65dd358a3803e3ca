// SluiceConfig: placeholder until the module lands.
