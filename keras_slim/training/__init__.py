"""Training utilities shared by the methods and apps: tf.distribute strategies and
resumable fits with run state."""
