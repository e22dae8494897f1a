"""PyTorch re-implementations of the POCO and TokenHMR networks (needs torch)."""
