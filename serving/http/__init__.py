"""HTTP layer of the model server: routes (api, admin, ui), parsing, schemas, OpenAPI, errors, auth."""
