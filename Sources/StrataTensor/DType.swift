/// Element types Strata understands. Compute is always `f32`; `f16` and `bf16`
/// are storage types (the dtypes of real checkpoints) converted to f32 where used.
public enum DType: String, Sendable, Codable, CaseIterable {
    case f32
    case f16
    case bf16

    /// Bytes per element.
    @inlinable public var byteSize: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        }
    }
}

/// Errors from the tensor runtime that come from input (files, user shapes),
/// not from programmer misuse (which trips a `precondition`).
public enum TensorError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Two shapes that had to agree did not; `context` names the tensor or operation.
    case shapeMismatch(context: String, expected: [Int], actual: [Int])
    /// A dtype this operation cannot use.
    case unsupportedDType(context: String, dtype: String)
    /// Allocation failed.
    case outOfMemory(bytes: Int)

    public var description: String {
        switch self {
        case let .shapeMismatch(context, expected, actual):
            return "\(context): shape mismatch, expected \(expected), got \(actual)"
        case let .unsupportedDType(context, dtype):
            return "\(context): unsupported dtype \(dtype)"
        case let .outOfMemory(bytes):
            return "out of memory allocating \(bytes) bytes"
        }
    }
}
