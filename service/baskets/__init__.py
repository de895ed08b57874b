"""Basket completion: routes, service function, schemas."""
