"""Everything that touches Faust's or aiokafka's internals, in one place."""
