// SluiceBroker: placeholder until the module lands.
