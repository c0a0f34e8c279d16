"""What every HTTP function imports before any of agentplane's code: pynamodb (the entity layer,
which brings botocore) and a Powertools resolver with validation, Logger and Metrics. `make bench`
measures it as the floor of a function's cold import."""

import pynamodb.models  # noqa: F401
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Query  # noqa: F401

app = APIGatewayHttpResolver(enable_validation=True)
logger = Logger(service="floor")
metrics = Metrics(namespace="floor")
