import MemwardenModel

/// The scalar forms a policy file uses besides plain strings and numbers:
/// Kubernetes quantities for bytes, Go-style durations, shares, URLs. Each
/// parser returns nil or a reason, never throws: the loader turns reasons into
/// located problems and goes on.
enum PolicyValues {
    /// A Kubernetes resource quantity as bytes: "536870912", "512Mi", "1.5Gi",
    /// "500M", "1e9". A fraction of a byte rounds up (as the kubelet does for
    /// memory); milli-units ("100m") are refused, they are a classic typo for Mi.
    static func bytes(_ text: String) -> Result<UInt64, Reason> {
        let suffix = text.drop { $0 == "+" || $0 == "-" || ($0.isASCII && ($0.isNumber || $0 == ".")) }
        if suffix == "m" {
            return .failure(Reason("'m' is milli (a thousandth of a byte); did you mean Mi (mebibytes)?"))
        }
        let quantity: KubernetesQuantity
        do {
            quantity = try KubernetesQuantity(parsing: text)
        } catch {
            if suffix.isEmpty || text.count == suffix.count || error.problem == "no number" {
                return .failure(Reason("expected bytes: an integer or a Kubernetes quantity such as 512Mi or 2Gi"))
            }
            if error.problem.hasPrefix("unknown suffix") {
                return .failure(Reason("unknown unit '\(suffix)' (expected Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E or none)"))
            }
            return .failure(Reason(error.problem))
        }
        guard !quantity.text.hasPrefix("-") || quantity.isZero else { return .failure(Reason("expected bytes: a quantity of at least 0")) }
        guard let bytes = quantity.bytes else { return .failure(Reason("too large (at most \(UInt64.max) bytes)")) }
        return .success(bytes)
    }

    /// A rate in bytes per second: a byte quantity, optionally followed by
    /// "/s" ("128Ki", "128Ki/s", "1Mi/s", "131072"). Zero is refused: a cap
    /// that never rises would stall a container's allocations for as long as
    /// the leak stays suspected, which is a kill by other means.
    static func rate(_ text: String) -> Result<UInt64, Reason> {
        let quantity = text.hasSuffix("/s") ? String(text.dropLast(2)) : text
        switch bytes(quantity) {
        case .failure(let reason):
            // the quantity's own reason (a unit, milli) is the useful one; "expected bytes" misnames the key's unit
            guard reason.message.hasPrefix("expected bytes") else { return .failure(reason) }
            return .failure(Reason("expected bytes per second of at least 1: a quantity such as 128Ki, 1Mi or 128Ki/s"))
        case .success(0):
            return .failure(Reason("must be more than 0 bytes per second (a cap that never rises would stall the container)"))
        case .success(let value):
            return .success(value)
        }
    }

    /// A Go-style duration: "500ms", "5s", "1m30s", "1.5h". A unit is required
    /// (a bare "5" could mean anything).
    static func duration(_ text: String) -> Result<Duration, Reason> {
        let reason = Reason("expected a duration such as 500ms, 5s, 1m or 1h30m")
        var rest = Substring(text)
        var total: Double = 0
        guard !rest.isEmpty else { return .failure(reason) }
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !number.isEmpty, let value = Double(number) else { return .failure(reason) }
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix { $0.isLetter || $0 == "µ" }
            rest = rest.dropFirst(unit.count)
            let seconds: Double
            switch unit {
            case "ns": seconds = 1e-9
            case "us", "µs": seconds = 1e-6
            case "ms": seconds = 1e-3
            case "s": seconds = 1
            case "m": seconds = 60
            case "h": seconds = 3600
            case "": return .failure(Reason("missing unit after '\(number)' (ns, us, ms, s, m or h)"))
            default: return .failure(Reason("unknown unit '\(unit)' (ns, us, ms, s, m or h)"))
            }
            total += value * seconds
        }
        guard total < 1e9 else { return .failure(Reason("too long")) }
        return .success(.nanoseconds(Int64((total * 1e9).rounded())))
    }

    /// A share written as a percentage ("70%", "99.5%") or a fraction (0.7).
    static func share(_ text: String) -> Result<Double, Reason> {
        if text.hasSuffix("%") {
            guard let value = Double(text.dropLast()), value.isFinite else {
                return .failure(Reason("expected a share such as 70% or 0.7"))
            }
            return .success(value / 100)
        }
        guard let value = Double(text), value.isFinite else { return .failure(Reason("expected a share such as 70% or 0.7")) }
        return .success(value)
    }

    /// An http or https URL with a host; the sinks speak nothing else.
    static func url(_ text: String) -> Result<String, Reason> {
        let expected = "expected an http:// or https:// URL with a host"
        guard !text.contains(where: { $0.isWhitespace }) else { return .failure(Reason("\(expected) (it contains spaces)")) }
        let lower = text.lowercased()
        let scheme: String
        if lower.hasPrefix("http://") {
            scheme = "http://"
        } else if lower.hasPrefix("https://") {
            scheme = "https://"
        } else {
            return .failure(Reason(expected))
        }
        let afterScheme = text.dropFirst(scheme.count)
        let authority = afterScheme.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        let hostPort = authority.split(separator: "@", omittingEmptySubsequences: false).last ?? ""
        var host = Substring(hostPort)
        var port: Substring?
        if host.hasPrefix("[") {
            // IPv6 literal: [::1]:9093
            guard let close = host.firstIndex(of: "]") else { return .failure(Reason("\(expected) (unclosed '[' in the host)")) }
            let after = host[host.index(after: close)...]
            if after.hasPrefix(":") { port = after.dropFirst() } else if !after.isEmpty {
                return .failure(Reason(expected))
            }
            host = host[...close]
        } else if let colon = host.lastIndex(of: ":") {
            port = host[host.index(after: colon)...]
            host = host[..<colon]
        }
        guard host.count > (host.hasPrefix("[") ? 2 : 0) else { return .failure(Reason("\(expected) (the host is missing)")) }
        if let port {
            guard let number = Int(port), (1...65535).contains(number) else {
                return .failure(Reason("\(expected) (bad port '\(port)')"))
            }
        }
        return .success(text)
    }

    struct Reason: Error, Sendable, Equatable {
        var message: String
        init(_ message: String) { self.message = message }
    }
}
