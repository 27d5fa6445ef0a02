package demo

// exitTail is how many log lines ExitError quotes for the demo's children.
const exitTail = 3
