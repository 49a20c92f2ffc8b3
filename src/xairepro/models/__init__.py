"""Models: WRN-d-k, ResNet-18/50, MNIST AE/classifier, Burgess VAE, LSTM AE, SimCLR head."""
