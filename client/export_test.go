package client

// ErrTellsNoSecret is errTellsNoSecret for the external tests.
var ErrTellsNoSecret = errTellsNoSecret
