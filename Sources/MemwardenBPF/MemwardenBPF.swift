// This module holds only the BPF objects that BPFObjectPlugin compiles from ebpf/
// and embeds (see EmbeddedBPFObjects in the generated source).
