"""The live Foxglove view of the car: `view` turns the bus's messages into Foxglove's (a pure core), `node`
serves them with Foxglove's SDK (`foxglove-sdk`, the optional `foxglove` extra), `gate` asks for the
console's API token when the view is served beyond loopback, `layout` is the one-view Foxglove layout."""
