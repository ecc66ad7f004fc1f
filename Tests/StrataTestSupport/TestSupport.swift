import StrataTensor

/// Shared by the test targets.

/// Deterministic pseudo-random numbers for tests (SplitMix64), no global state.
public struct TestRNG {
    var state: UInt64
    public init(_ seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// uniform in [-1, 1)
    public mutating func float() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
    public mutating func floats(_ n: Int) -> [Float] { (0..<n).map { _ in float() } }
    public mutating func tensor(_ shape: [Int]) -> Tensor { Tensor(floats(shape.reduce(1, *)), shape: shape) }
}

public func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "maxAbsDiff: \(a.count) vs \(b.count)")
    var m: Float = 0
    for (x, y) in zip(a, b) { m = max(m, abs(x - y)) }
    return m
}

/// Naive matmul on Tensor views through the subscript (any strides, any dtype).
public func naiveMatmul(_ a: Tensor, _ b: Tensor) -> [Float] {
    let m = a.shape[0], k = a.shape[1], n = b.shape[1]
    var out = [Float](repeating: 0, count: m * n)
    for i in 0..<m { for j in 0..<n {
        var s: Double = 0
        for p in 0..<k { s += Double(a[i, p]) * Double(b[p, j]) }
        out[i * n + j] = Float(s)
    } }
    return out
}
