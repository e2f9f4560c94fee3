"""The device end: the camera and its capture thread, the Raspberry Pi bundle, ARM parity under QEMU. No torch."""
