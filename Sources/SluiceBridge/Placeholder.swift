// SluiceBridge: placeholder until the module lands.
