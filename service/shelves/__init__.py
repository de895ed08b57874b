"""The home page as shelves: routes, service function, schemas."""
