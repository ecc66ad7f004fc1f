import Foundation
import StrataJSON
import StrataTensor

/// Errors reading a safetensors file or a sharded checkpoint; each names the file and, where
/// there is one, the tensor.
public enum SafetensorsError: Error, CustomStringConvertible, Equatable, Sendable {
    case fileTooShort(file: String, size: Int)
    case headerTooLarge(file: String, headerLength: UInt64, fileSize: Int)
    case invalidHeader(file: String, reason: String)
    case unknownDType(file: String, tensor: String, dtype: String)
    case unsupportedDType(file: String, tensor: String, dtype: String)
    case byteLengthMismatch(file: String, tensor: String, shape: [Int], dtype: String, bytes: Int)
    case offsetsOutOfRange(file: String, tensor: String, begin: Int, end: Int, dataSize: Int)
    case overlap(file: String, tensor: String, other: String)
    /// A tensor name that appears twice in the header.
    case duplicateTensor(file: String, tensor: String)
    case missingTensor(name: String, checkpoint: String)
    case invalidIndex(file: String, reason: String)
    case noWeights(directory: String)
    /// A tensor holds NaN or infinity where a finite value is needed (quantizing it).
    case nonFiniteValue(file: String, tensor: String, row: Int)

    public var description: String {
        switch self {
        case let .fileTooShort(f, s): return "\(f): not a safetensors file: \(s) bytes, need at least 8"
        case let .headerTooLarge(f, h, s): return "\(f): header length \(h) exceeds the file (\(s) bytes)"
        case let .invalidHeader(f, r): return "\(f): invalid safetensors header: \(r)"
        case let .unknownDType(f, t, d): return "\(f): tensor '\(t)' has unknown dtype '\(d)'"
        case let .unsupportedDType(f, t, d): return "\(f): tensor '\(t)' has dtype \(d); Strata computes with F32, F16 and BF16"
        case let .byteLengthMismatch(f, t, s, d, b):
            return "\(f): tensor '\(t)' has shape \(s) of \(d) but \(b) bytes of data"
        case let .offsetsOutOfRange(f, t, b, e, n):
            return "\(f): tensor '\(t)' data offsets [\(b), \(e)] outside the data section of \(n) bytes"
        case let .overlap(f, t, o): return "\(f): tensors '\(t)' and '\(o)' overlap"
        case let .duplicateTensor(f, t): return "\(f): tensor '\(t)' appears twice in the header"
        case let .missingTensor(n, c): return "\(c): missing tensor '\(n)'"
        case let .invalidIndex(f, r): return "\(f): invalid index: \(r)"
        case let .noWeights(d): return "\(d): no *.safetensors files"
        case let .nonFiniteValue(f, t, r): return "\(f): tensor '\(t)' holds NaN or infinity (row \(r)); it cannot be quantized"
        }
    }
}

/// A model's weights as named tensors at byte ranges of files: a safetensors checkpoint, or a
/// GGUF file (whose tensors the model layer presents under the Hugging Face names). The tiered
/// store, the inventory and the planner read weights through this.
public protocol WeightCheckpoint: AnyObject, Sendable {
    /// The folder or file, for messages.
    var location: String { get }
    var tensorNames: [String] { get }
    func contains(_ name: String) -> Bool
    func entry(_ name: String) -> TensorEntry?
    /// The file that holds `name`.
    func path(of name: String) -> String?
    /// A zero-copy view of tensor `name`.
    func tensor(_ name: String) throws -> Tensor
}

/// One tensor's entry in a checkpoint (a safetensors header or a GGUF tensor info).
public struct TensorEntry: Sendable, Equatable {
    public let name: String
    /// The dtype as written (`F32`, `BF16`, `I64`, `Q4_K`, ...).
    public let rawDType: String
    /// The compute-capable dtype, or nil for other dtypes.
    public let dtype: DType?
    public let shape: [Int]
    /// Absolute byte offsets in the file, `begin ..< end`.
    public let begin: Int
    public let end: Int
    public var byteCount: Int { end - begin }
    public init(name: String, rawDType: String, dtype: DType?, shape: [Int], begin: Int, end: Int) {
        self.name = name; self.rawDType = rawDType; self.dtype = dtype; self.shape = shape; self.begin = begin; self.end = end
    }
}

/// A safetensors file: 8-byte little-endian header length N, N bytes of JSON
/// header (`name -> {dtype, shape, data_offsets: [begin, end]}` plus optional
/// `__metadata__`), then the data section; offsets are relative to the data section.
///
/// `init(path:)` reads and validates the header only (no mapping): header
/// length within the file, every dtype known, `end - begin == product(shape) *
/// dtype size`, offsets inside the data section, no two tensors overlapping.
/// `tensor(_:)` maps the file on first use and returns zero-copy views.
public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    public let fileSize: Int
    /// Entries by name.
    public let entries: [String: TensorEntry]
    /// Entries in file order.
    public let ordered: [TensorEntry]
    public let metadata: [String: String]
    private var mapping: MappedFile?
    private let lock = NSLock()

    static let dtypeSizes: [String: Int] = [
        "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
        "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
        "I32": 4, "U32": 4, "F32": 4,
        "I64": 8, "U64": 8, "F64": 8,
    ]

    public init(path: String) throws {
        let fd = try FileIO.openRead(path)
        defer { FileIO.closeFile(fd) }
        let size = try FileIO.size(fd: fd, path: path)
        guard size >= 8 else { throw SafetensorsError.fileTooShort(file: path, size: size) }
        var lenBytes = [UInt8](repeating: 0, count: 8)
        try lenBytes.withUnsafeMutableBytes { try FileIO.pread(fd: fd, path: path, into: $0.baseAddress!, count: 8, offset: 0) }
        let headerLen = lenBytes.enumerated().reduce(UInt64(0)) { $0 | (UInt64($1.element) << (8 * UInt64($1.offset))) }
        guard headerLen <= UInt64(size - 8) else {
            throw SafetensorsError.headerTooLarge(file: path, headerLength: headerLen, fileSize: size)
        }
        var header = [UInt8](repeating: 0, count: Int(headerLen))
        if headerLen > 0 {
            try header.withUnsafeMutableBytes { try FileIO.pread(fd: fd, path: path, into: $0.baseAddress!, count: Int(headerLen), offset: 8) }
        }
        self.path = path
        self.fileSize = size
        let dataStart = 8 + Int(headerLen)
        let dataSize = size - dataStart
        let (entries, metadata) = try SafetensorsFile.parseHeader(header, file: path, dataStart: dataStart, dataSize: dataSize)
        self.entries = Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0) })
        self.ordered = entries.sorted { $0.begin < $1.begin || ($0.begin == $1.begin && $0.name < $1.name) }
        self.metadata = metadata
        // no overlaps (zero-sized tensors take no room)
        var prev: TensorEntry?
        for e in ordered where e.byteCount > 0 {
            if let p = prev, e.begin < p.end { throw SafetensorsError.overlap(file: path, tensor: e.name, other: p.name) }
            prev = e
        }
    }

    static func parseHeader(_ bytes: [UInt8], file: String, dataStart: Int, dataSize: Int) throws -> ([TensorEntry], [String: String]) {
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes), options: [])
        } catch {
            throw SafetensorsError.invalidHeader(file: file, reason: "not JSON (\(bytes.count) bytes)")
        }
        guard let obj = json as? [String: Any] else {
            throw SafetensorsError.invalidHeader(file: file, reason: "header is not a JSON object")
        }
        // a name given twice would silently keep the last: refused (the order-keeping parser sees both)
        if case let .object(pairs)? = try? JSONValue.parse(Data(bytes)) {
            var seen = Set<String>()
            for (k, _) in pairs where !seen.insert(k).inserted {
                throw SafetensorsError.duplicateTensor(file: file, tensor: k)
            }
        }
        var metadata: [String: String] = [:]
        var entries: [TensorEntry] = []
        for (name, value) in obj {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw SafetensorsError.invalidHeader(file: file, reason: "__metadata__ is not an object")
                }
                for (k, v) in m { metadata[k] = (v as? String) ?? "\(v)" }
                continue
            }
            guard let t = value as? [String: Any] else {
                throw SafetensorsError.invalidHeader(file: file, reason: "entry '\(name)' is not an object")
            }
            guard let rawDType = t["dtype"] as? String else {
                throw SafetensorsError.invalidHeader(file: file, reason: "tensor '\(name)' has no dtype")
            }
            guard let shapeAny = t["shape"] as? [Any], let shape = intArray(shapeAny), shape.allSatisfy({ $0 >= 0 }) else {
                throw SafetensorsError.invalidHeader(file: file, reason: "tensor '\(name)' has no valid shape")
            }
            guard let offAny = t["data_offsets"] as? [Any], let off = intArray(offAny), off.count == 2 else {
                throw SafetensorsError.invalidHeader(file: file, reason: "tensor '\(name)' has no valid data_offsets")
            }
            guard let elemSize = dtypeSizes[rawDType] else {
                throw SafetensorsError.unknownDType(file: file, tensor: name, dtype: rawDType)
            }
            let (begin, end) = (off[0], off[1])
            guard begin >= 0, end >= begin, end <= dataSize else {
                throw SafetensorsError.offsetsOutOfRange(file: file, tensor: name, begin: begin, end: end, dataSize: dataSize)
            }
            var count = 1
            for d in shape {
                let (p, o) = count.multipliedReportingOverflow(by: d)
                if o { throw SafetensorsError.byteLengthMismatch(file: file, tensor: name, shape: shape, dtype: rawDType, bytes: end - begin) }
                count = p
            }
            guard count.multipliedReportingOverflow(by: elemSize).partialValue == end - begin,
                  !count.multipliedReportingOverflow(by: elemSize).overflow else {
                throw SafetensorsError.byteLengthMismatch(file: file, tensor: name, shape: shape, dtype: rawDType, bytes: end - begin)
            }
            let dtype: DType? = ["F32": .f32, "F16": .f16, "BF16": .bf16][rawDType]
            entries.append(TensorEntry(name: name, rawDType: rawDType, dtype: dtype, shape: shape,
                                            begin: dataStart + begin, end: dataStart + end))
        }
        return (entries, metadata)
    }

    private static func intArray(_ a: [Any]) -> [Int]? {
        var out: [Int] = []
        for v in a {
            guard let n = v as? NSNumber else { return nil }
            let d = n.doubleValue
            guard d.rounded() == d, d >= 0, d < 9.0e18 else { return nil }
            out.append(n.intValue)
        }
        return out
    }

    /// The file's mapping, created on first use.
    public func mapped() throws -> MappedFile {
        lock.lock(); defer { lock.unlock() }
        if let m = mapping { return m }
        let m = try MappedFile(path: path)
        guard m.size == fileSize else {
            throw SafetensorsError.invalidHeader(file: path, reason: "file changed size from \(fileSize) to \(m.size) bytes")
        }
        mapping = m
        return m
    }

    /// A zero-copy view of tensor `name` (F32, F16 or BF16).
    public func tensor(_ name: String) throws -> Tensor {
        guard let e = entries[name] else { throw SafetensorsError.missingTensor(name: name, checkpoint: path) }
        guard let dtype = e.dtype else { throw SafetensorsError.unsupportedDType(file: path, tensor: name, dtype: e.rawDType) }
        let m = try mapped()
        return Tensor(storage: m.storage(offset: e.begin, count: e.byteCount), dtype: dtype, shape: e.shape)
    }
}

/// A model's weights: one `model.safetensors`, several `*.safetensors`, or shards named by
/// `model.safetensors.index.json` (`{"weight_map": {tensor: file}}`).
public final class SafetensorsCheckpoint: WeightCheckpoint, @unchecked Sendable {
    public let directory: String
    public let files: [SafetensorsFile]
    /// Tensor name -> index into `files`.
    private let fileIndex: [String: Int]

    public init(directory: String) throws {
        self.directory = directory
        let fm = FileManager.default
        let indexPath = (directory as NSString).appendingPathComponent("model.safetensors.index.json")
        var fileNames: [String]
        var expected: [String: String]? = nil
        if fm.fileExists(atPath: indexPath) {
            guard let data = try FileIO.readSmallFile(indexPath),
                  let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw SafetensorsError.invalidIndex(file: indexPath, reason: "not a JSON object")
            }
            guard let map = obj["weight_map"] as? [String: String] else {
                throw SafetensorsError.invalidIndex(file: indexPath, reason: "no weight_map of tensor -> file")
            }
            for f in Set(map.values) where f.contains("/") || f.contains("..") {
                throw SafetensorsError.invalidIndex(file: indexPath, reason: "shard '\(f)' is not a file name in the folder")
            }
            fileNames = Array(Set(map.values)).sorted()
            expected = map
        } else {
            // the HF layout: model.safetensors alone, else every *.safetensors in the folder
            let all = (try? fm.contentsOfDirectory(atPath: directory)) ?? []
            fileNames = all.contains("model.safetensors") ? ["model.safetensors"] : all.filter { $0.hasSuffix(".safetensors") }.sorted()
        }
        guard !fileNames.isEmpty else { throw SafetensorsError.noWeights(directory: directory) }
        var files: [SafetensorsFile] = []
        var location: [String: Int] = [:]
        for name in fileNames {
            let path = (directory as NSString).appendingPathComponent(name)
            let f = try SafetensorsFile(path: path)
            for entryName in f.entries.keys {
                if let prev = location[entryName] {
                    throw SafetensorsError.invalidIndex(file: path, reason: "tensor '\(entryName)' also in \(files[prev].path)")
                }
                location[entryName] = files.count
            }
            files.append(f)
        }
        if let expected {
            for (tensor, file) in expected where location[tensor].map({ (files[$0].path as NSString).lastPathComponent }) != file {
                throw SafetensorsError.invalidIndex(file: indexPath, reason: "tensor '\(tensor)' is not in shard \(file)")
            }
        }
        self.files = files
        self.fileIndex = location
    }

    public var tensorNames: [String] { fileIndex.keys.sorted() }
    public func contains(_ name: String) -> Bool { fileIndex[name] != nil }

    public func entry(_ name: String) -> TensorEntry? {
        fileIndex[name].flatMap { files[$0].entries[name] }
    }

    /// A zero-copy view of tensor `name`.
    public func tensor(_ name: String) throws -> Tensor {
        guard let i = fileIndex[name] else { throw SafetensorsError.missingTensor(name: name, checkpoint: directory) }
        return try files[i].tensor(name)
    }


    /// The file that holds `name`.
    public func file(of name: String) -> SafetensorsFile? { fileIndex[name].map { files[$0] } }
    public func path(of name: String) -> String? { file(of: name)?.path }
    public var location: String { directory }
}

/// The plain weight store: every tensor a view into the mapped checkpoint (the llama.cpp way;
/// the page cache holds what was read). Layers need no acquiring.
public final class MappedWeightStore: WeightStore, @unchecked Sendable {
    public let checkpoint: any WeightCheckpoint
    public init(checkpoint: any WeightCheckpoint) { self.checkpoint = checkpoint }
    public func contains(_ name: String) -> Bool { checkpoint.contains(name) }
    public func tensor(_ name: String, layer: Int) throws -> Tensor { try checkpoint.tensor(name) }
    public func acquire(layer: Int) throws {}
    public func release(layer: Int) {}
    public var location: String { checkpoint.location }
}
