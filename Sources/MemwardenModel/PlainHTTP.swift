/// A URL that would carry a credential in clear text: `http://` to anything
/// but this host. A bearer token sent that way can be read by anyone on the
/// path; over loopback it never leaves the node (test servers, a sidecar).
public enum PlainHTTP {
    /// The host of an `http://` URL that is not a loopback address; nil for
    /// `https://` and for loopback (`localhost`, `127.0.0.0/8`, `[::1]`).
    public static func remoteHost(_ url: String) -> String? {
        guard url.lowercased().hasPrefix("http://") else { return nil }
        var authority = url.dropFirst("http://".count).prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        let host: Substring
        if authority.hasPrefix("[") {
            host = authority.dropFirst().prefix { $0 != "]" }
        } else {
            host = authority.prefix { $0 != ":" }
        }
        let name = host.lowercased()
        if name == "localhost" || name == "::1" || name.hasPrefix("127.") { return nil }
        return name
    }
}
