from tt_cli.main import cli

cli()
