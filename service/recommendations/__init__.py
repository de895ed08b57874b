"""Recommendations for a customer and items similar to an item: routes, service functions, reasons, schemas."""
