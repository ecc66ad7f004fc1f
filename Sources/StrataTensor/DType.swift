/// Element types Strata understands. Compute is always `f32`; `f16` and `bf16` are storage types
/// (the dtypes of real checkpoints) converted to f32 where used; the quantized ones are ggml's
/// block layouts (llama.cpp's GGUF files): a run of `blockElements` weights stored in
/// `blockBytes` bytes (scales and codes), dequantized to f32 where used. A quantized tensor's
/// rows (its last dimension) hold whole blocks.
public enum DType: String, Sendable, Codable, CaseIterable {
    case f32
    case f16
    case bf16
    /// 32 weights: an f16 scale and 32 signed bytes (8.5 bits per weight).
    case q8_0
    /// 32 weights: an f16 scale and 32 nibbles offset by 8 (4.5 bits per weight).
    case q4_0
    /// 256 weights: f16 scale and min, eight 6-bit sub-scales and mins, 256 nibbles (4.5 bits).
    case q4_k
    /// 256 weights: 6-bit codes, sixteen 8-bit sub-scales, an f16 scale (6.5625 bits).
    case q6_k

    /// The storage types of unquantized checkpoints.
    public static let floats: [DType] = [.f32, .f16, .bf16]
    /// The ggml block types.
    public static let quantized: [DType] = [.q8_0, .q4_0, .q4_k, .q6_k]

    public var isQuantized: Bool { blockElements > 1 }

    /// Weights per block (1 for the float types).
    @inlinable public var blockElements: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q8_0, .q4_0: return 32
        case .q4_k, .q6_k: return 256
        }
    }

    /// Bytes per block (the element size for the float types).
    @inlinable public var blockBytes: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q8_0: return 34
        case .q4_0: return 18
        case .q4_k: return 144
        case .q6_k: return 210
        }
    }

    /// Bytes per element of a float type. A quantized type has no per-element size: use
    /// `bytes(elements:)`.
    @inlinable public var byteSize: Int {
        precondition(!isQuantized, "DType.byteSize of quantized \(self): use bytes(elements:)")
        return blockBytes
    }

    /// Average bytes per weight (0.53125 for Q8_0).
    public var bytesPerElement: Double { Double(blockBytes) / Double(blockElements) }

    /// Bytes of `n` elements; `n` is a multiple of the block (rounded up to whole blocks if not).
    @inlinable public func bytes(elements n: Int) -> Int {
        let be = blockElements
        return be == 1 ? n * blockBytes : (n + be - 1) / be * blockBytes
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

extension DType {
    /// What a KV cache can store keys and values as (`--kv-type`; llama.cpp's `-ctk`/`-ctv`):
    /// f32 exactly, f16 and bf16 rounded per value, q8_0 in blocks of 32 values of one head.
    public static let kvTypes: [DType] = [.f32, .f16, .bf16, .q8_0]
    /// The KV type when none is asked for.
    public static let kvDefault: DType = .f16

    /// `name` as a KV cache type, checked against heads of `headDim` values (q8_0's blocks of 32
    /// must not straddle two heads); the error names the type and the head size.
    public static func kvType(_ name: String, headDim: Int) throws -> DType {
        guard let t = DType(rawValue: name.lowercased()), kvTypes.contains(t) else {
            throw TensorError.unsupportedDType(context: "KV cache type (one of \(kvTypes.map(\.rawValue).joined(separator: ", ")))", dtype: name)
        }
        try t.checkKV(headDim: headDim)
        return t
    }

    /// Throws unless K/V rows of heads of `headDim` values can be stored as this type.
    public func checkKV(headDim: Int) throws {
        if !DType.kvTypes.contains(self) {
            throw TensorError.unsupportedDType(context: "KV cache type (one of \(DType.kvTypes.map(\.rawValue).joined(separator: ", ")))", dtype: rawValue)
        }
        if headDim % blockElements != 0 {
            throw TensorError.unsupportedDType(context: "KV cache type \(rawValue) needs head_dim a multiple of \(blockElements); this model's head_dim is \(headDim)",
                                               dtype: rawValue)
        }
    }
}
