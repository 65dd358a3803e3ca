// SluiceServer: placeholder until the module lands.
