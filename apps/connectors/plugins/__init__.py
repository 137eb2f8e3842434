"""Built-in connector types, one module per type; the registry imports every module here."""
