"""The FastAPI service: recommendations, recaps and events for the storefront."""
