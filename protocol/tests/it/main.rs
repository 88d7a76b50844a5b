//! Integration tests of `maillage-protocol`, as one test binary.

mod release_vectors;
