// SluiceAuth: placeholder until the module lands.
