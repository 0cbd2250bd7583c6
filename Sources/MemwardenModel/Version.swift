public enum MemwardenVersion {
    public static let current = "0.1.0"
}
