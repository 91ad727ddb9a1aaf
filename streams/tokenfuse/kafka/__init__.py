"""Talking to Kafka: the Avro codec, the topics and their configs, a compacted-topic follower."""
