"""The VAE-GAN trainer. TensorFlow and the standard library only; ships to Vertex AI alone."""
