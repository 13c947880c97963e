"""Independent restatements of product rules, which the tests hold the product to."""
