"""`make bench`: cold-start import cost per function and DynamoDB calls per route."""
