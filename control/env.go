package control

// EnvBuildInput names an environment by what defines it.
type EnvBuildInput struct {
	Binary string // SHA-256 of the program; empty for a command
	Image  string // the user's image, if any
	Tenant string // whose program it is; empty for the default tenant
}

// EnvInfo is what an environment build learned about a program, and the image it
// made for it.
type EnvInfo struct {
	Functions []string
	GOOS      string
	GOARCH    string
	// Image is the user's image with the container worker layered in, when the
	// environment names one.
	Image string `json:",omitempty"`
}

// ImageInput names a user's image to build an environment on.
type ImageInput struct {
	Image string
}

// InspectInput names a program in the blob store.
type InspectInput struct {
	Binary string
	Tenant string // whose program it is; empty for the default tenant
}
