"""Camera sources: V4L2 devices, video files, image folders and recorded drives, read as fresh frames."""
