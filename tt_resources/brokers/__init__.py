"""Brokers implementing tt_resources.broker.Broker (IBKR: tt_resources.brokers.ibkr.IbkrBroker)."""
