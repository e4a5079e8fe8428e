"""End to end through real servers and clients, mostly the real Neuroglancer client in headless Chromium."""
