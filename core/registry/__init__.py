"""The component registry: what can be installed, where it is installed, and how to find it."""
