"""The service's reads of the online store: customer features, recaps and the item catalog."""
