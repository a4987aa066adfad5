//! vsa-index: the binary index (see README.md).
