"""Hosting services whose download URL and pins are found through an API at fetch time."""
