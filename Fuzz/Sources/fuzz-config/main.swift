import Foundation
import FuzzSupport
import Strata

/// config.json: decoded into an architecture's spec and validated, or a typed error.
func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let config = ConfigFile(path: "config.json", data: Data(bytes: data, count: size))
    do {
        try config.checkShapeFields()
        let arch = try ModelRegistry.architecture(of: config)
        let spec = try arch.spec(config: config)
        try spec.validate(file: "config.json")
        _ = spec.kvBytesPerToken
    } catch {}
    return 0
}

runFuzzer { data, size in data.map { fuzzOne($0, size) } ?? 0 }
