"""Yearly recaps ("Your year with us"): routes, service functions, the documented record."""
