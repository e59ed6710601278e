module stash-webhook/benches/gopeer

go 1.26
