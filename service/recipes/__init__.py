"""Shop by recipe: routes, service functions, schemas."""
