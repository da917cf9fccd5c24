"""Image datasets, from torchvision, the offline mirror or scikit-learn, each saying where it came from."""
