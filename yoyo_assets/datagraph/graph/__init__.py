"""The property graph (LadybugDB): schema and the embedded sink (`store`, `bulk`), corrections and
identities applied to it (`corrections`, `identity`), and the graph service with its wire format
and client (`service`, `wire`, `client`)."""
