//! Harrow worker: task execution, input readers, shuffle writer/server/fetcher, output commit
