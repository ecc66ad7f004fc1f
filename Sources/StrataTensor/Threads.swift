import Synchronization

/// One setting for the number of threads, applied to OpenBLAS and to Strata's own parallel
/// loops (`Threads.parallelFor`), which run on the kernel wrapper's worker pool (`Kernels`):
/// workers that stay ready between calls instead of a dispatch per call.
public enum Threads {
    /// Atomic: a library user (or a test) may set it while another thread's loops read it.
    private static let _count = Atomic<Int>(defaultCount())

    private static func defaultCount() -> Int {
        let n = BLAS.threads
        let c = n > 0 ? n : 1
        Kernels.setPoolThreads(c)
        return c
    }

    /// Threads in use.
    public static var count: Int { _count.load(ordering: .relaxed) }

    /// Sets the thread count for OpenBLAS and Strata's loops. Call before work starts.
    public static func set(_ n: Int) {
        precondition(n >= 1, "Threads.set: need at least one thread, got \(n)")
        _count.store(n, ordering: .relaxed)
        BLAS.setThreads(n)
        Kernels.setPoolThreads(n)
    }

    /// Runs `body` over `0..<n` split into at most `count` contiguous chunks, in parallel.
    /// Chunks smaller than `minChunk` are merged so tiny loops stay on one thread.
    public static func parallelFor(_ n: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        if n <= 0 { return }
        let chunks = max(1, min(count, n / max(1, minChunk)))
        if chunks == 1 { body(0..<n); return }
        Kernels.runPool(chunks: chunks) { c in body((n * c / chunks)..<(n * (c + 1) / chunks)) }
    }
}

extension Threads {
    /// Like `parallelFor`, but also passes the chunk's index (`0 ..< chunkCount`) so each chunk
    /// can use its own scratch. Returns nothing until all chunks finish.
    public static func parallelChunks(_ n: Int, minChunk: Int = 1, _ body: (_ chunk: Int, _ range: Range<Int>) -> Void) {
        if n <= 0 { return }
        let chunks = max(1, min(count, n / max(1, minChunk)))
        if chunks == 1 { body(0, 0..<n); return }
        Kernels.runPool(chunks: chunks) { c in body(c, (n * c / chunks)..<(n * (c + 1) / chunks)) }
    }

    /// Runs `fn(context, chunk)` for `chunk in 0 ..< chunks` (at most `count` run at once), the
    /// caller's thread taking part; returns when all are done. Allocates nothing (unlike the
    /// closure forms, whose closure is boxed once per call): for the loops of a decode step.
    /// `context` points at whatever `fn` needs; it must outlive the call.
    public static func runChunks(_ chunks: Int, context: UnsafeMutableRawPointer,
                                 _ fn: @convention(c) (_ context: UnsafeMutableRawPointer?, _ chunk: Int) -> Void) {
        Kernels.runPool(chunks: chunks, context: context, fn)
    }

    /// The most chunks `parallelChunks` uses.
    public static var maxChunks: Int { count }
}

/// Carries a value into a `@Sendable` closure when the caller guarantees the
/// accesses do not race (disjoint ranges of a buffer, say).
public struct UncheckedSendable<T>: @unchecked Sendable {
    public let value: T
    @inlinable public init(_ value: T) { self.value = value }
}
