"""The client wing: connecting to a namespace, starting workflows, handles to them."""
