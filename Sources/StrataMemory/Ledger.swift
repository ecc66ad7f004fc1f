import Foundation
import StrataTensor

/// Errors of the RAM budget.
public enum BudgetError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The budget cannot hold even the minimum this model and workload need.
    case tooSmall(budget: Int, minimum: Int, detail: String)
    /// A charge would take the ledger over its budget.
    case exceeded(line: String, requested: Int, used: Int, budget: Int)

    public var description: String {
        switch self {
        case let .tooSmall(b, m, d):
            return "RAM budget \(Ledger.human(b)) is too small: this model and workload need at least \(Ledger.human(m)) (\(d))"
        case let .exceeded(l, r, u, b):
            return "RAM budget exceeded: \(l) needs \(Ledger.human(r)) more, \(Ledger.human(u)) of \(Ledger.human(b)) in use"
        }
    }
}

/// One byte ledger for everything Strata keeps resident, in the lines of `LedgerLine` (resident
/// weights, KV blocks in RAM, staging buffers, activations, runtime overhead). Every allocation
/// that counts is charged to its line before it is made; the ledger refuses charges past the
/// budget and remembers its peak with the lines at that moment.
public final class Ledger: @unchecked Sendable {
    public let budget: Int?
    public private(set) var lines: [LedgerLine: Int] = [:]
    public private(set) var total = 0
    public private(set) var peak = 0
    public private(set) var peakLines: [LedgerLine: Int] = [:]
    private let lock = NSLock()

    public init(budget: Int?) { self.budget = budget }

    public func charge(_ line: LedgerLine, _ bytes: Int) throws {
        precondition(bytes >= 0, "Ledger.charge: negative bytes")
        lock.lock(); defer { lock.unlock() }
        if let b = budget, total + bytes > b { throw BudgetError.exceeded(line: line.rawValue, requested: bytes, used: total, budget: b) }
        lines[line, default: 0] += bytes
        total += bytes
        if total > peak { peak = total; peakLines = lines }
    }

    public func credit(_ line: LedgerLine, _ bytes: Int) {
        lock.lock(); defer { lock.unlock() }
        precondition((lines[line] ?? 0) >= bytes, "Ledger.credit: \(line.rawValue) holds \(lines[line] ?? 0), crediting \(bytes)")
        lines[line]! -= bytes
        total -= bytes
    }

    static func human(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(n) B" : String(format: "%.1f ", v) + units[u]
    }
}

/// The process's peak and current resident set (VmHWM, VmRSS from /proc/self/status), in bytes.
public enum ProcessMemory {
    public static func read() -> (rss: Int, peak: Int) {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
        var rss = 0, peak = 0
        for line in s.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count >= 2, let kb = Int(parts[1]) else { continue }
            if parts[0] == "VmRSS:" { rss = kb * 1024 }
            if parts[0] == "VmHWM:" { peak = kb * 1024 }
        }
        return (rss, peak)
    }
}
