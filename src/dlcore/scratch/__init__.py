"""From-scratch implementations the chapters build and verify against PyTorch."""
