/// Element types Strata understands. Compute is always `f32`; `f16` and `bf16` are storage types
/// (the dtypes of real checkpoints) converted to f32 where used; the quantized ones are ggml's
/// block layouts (llama.cpp's GGUF files): a run of `blockElements` weights stored in
/// `blockBytes` bytes (scales and codes), dequantized to f32 where used. A quantized tensor's
/// rows (its last dimension) hold whole blocks.
///
/// A type's facts live in one row each: its case here (the name is ggml's, lowercased, and names
/// it in GGUF files, on the command line and to the C kernels), and its row in the kernels'
/// traits table (`CStrataKernels/qtypes.c`: block size, decoding, kernels), from which
/// `blockElements` and `blockBytes` are read. docs/architecture.md, "Adding a quant type".
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
    /// 32 weights: f16 scale and min, 32 nibbles (5 bits per weight).
    case q4_1
    /// 32 weights: an f16 scale, 32 five-bit codes offset by 16 (5.5 bits per weight).
    case q5_0
    /// 256 weights: Q4_K's scales and mins, 256 five-bit codes (5.5 bits per weight).
    case q5_k
    /// 32 weights: an f16 scale, 32 nibbles indexing sixteen non-uniform values (4.5 bits).
    case iq4_nl
    /// 256 weights: an f16 scale, eight 6-bit sub-scales, IQ4_NL's codes (4.25 bits).
    case iq4_xs
    /// 32 weights: an E8M0 exponent and 32 FP4 (E2M1) nibbles (4.25 bits; gpt-oss's experts).
    case mxfp4

    /// The storage types of unquantized checkpoints.
    public static let floats: [DType] = [.f32, .f16, .bf16]
    /// The ggml block types.
    public static let quantized: [DType] = allCases.filter { !floats.contains($0) }

    public var isQuantized: Bool { !DType.floats.contains(self) }

    /// Every type's name, for help and error texts ("f32, f16, ...").
    public static let names: String = allCases.map(\.rawValue).joined(separator: ", ")

    /// Weights per block (1 for the float types), from the kernels' traits table.
    public var blockElements: Int { DType.blocks[index].elements }

    /// Bytes per block (the element size for the float types), from the kernels' traits table.
    public var blockBytes: Int { DType.blocks[index].bytes }

    /// Each type's block, in `allCases` order (set by the kernel wrapper from the traits table).
    static let blocks: [(elements: Int, bytes: Int)] = allCases.map { Kernels.block(of: $0) }
    /// The position in `allCases` (kept once: `allCases` builds its array on each call, and the
    /// kernel wrapper asks per linear call).
    private static let order = allCases
    var index: Int { DType.order.firstIndex(of: self)! }

    /// Bytes per element of a float type. A quantized type has no per-element size: use
    /// `bytes(elements:)`.
    public var byteSize: Int {
        precondition(!isQuantized, "DType.byteSize of quantized \(self): use bytes(elements:)")
        return blockBytes
    }

    /// Average bytes per weight (0.53125 for Q8_0).
    public var bytesPerElement: Double { Double(blockBytes) / Double(blockElements) }

    /// Bytes of `n` elements; `n` is a multiple of the block (rounded up to whole blocks if not).
    public func bytes(elements n: Int) -> Int {
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
