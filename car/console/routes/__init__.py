"""The console's HTTP routes, one module per concern; car.console.app puts them together behind the gate."""
