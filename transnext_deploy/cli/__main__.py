"""`python -m transnext_deploy.cli`: the same application as the `transnext-deploy` script."""

from transnext_deploy.cli import app

app()
