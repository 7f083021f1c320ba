//! Harrow coordinator: planning, the scheduler, job state, gRPC services, and the harrow binary
